"""`kairos validate` renders every variant for sample recipients and reports template errors with
the template's name and line — exit code 2, no traceback."""

from __future__ import annotations

from tests.conftest import Project
from tests.schedule.test_send_smtp import seed_project


def test_validate_renders_every_variant_for_sample_recipients_from_the_database(project: Project) -> None:
    seed_project(project)
    result = project.kairos("validate", check=True)
    assert "every variant rendered for 3 sample recipient(s) from the database" in result.stdout


def test_validate_reports_a_template_error_with_file_and_line(project: Project) -> None:
    seed_project(project)
    project.write("templates/partials/footer.html", """
        <p>Thanks for reading.</p>
        <p>{{ recipient.attributes.nickname }}</p>
    """)
    result = project.kairos("validate")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {project.path / 'templates' / 'partials' / 'footer.html'}:2: undefined value: " in result.stderr
    assert "nickname" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_refuses_template_injection_naming_the_template(project: Project) -> None:
    project.write("templates/digest.txt", """
        Hello
        {{ cycler.__init__.__globals__.os.popen('id').read() }}
    """)
    seed_project(project)
    result = project.kairos("validate")
    assert result.returncode == 2
    assert f"{project.path / 'templates' / 'digest.txt'}:2: refused by the sandbox" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_works_before_any_data_with_built_in_samples(project: Project) -> None:
    project.write("campaigns/news.toml", """
        [campaign]
        name = "news"
        goal = "click"

        [content]
        pool = "news"

        [[variants]]
        name = "a"
        subject = "Hello {{ recipient.attributes.first_name }}"
        template = "spotlight"
    """)
    result = project.kairos("validate", check=True)
    assert "built-in sample recipients" in result.stdout
