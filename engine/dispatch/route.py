"""Push notifications to the provider of each device's platform (fcm, apns, webpush)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from engine.dispatch.base import Delivery, PushEnvelope, Transport
from engine.errors import PushError


class PlatformRouter(Transport[PushEnvelope]):
    """Sends each envelope through the transport of its platform."""

    name = "push"

    def __init__(self, providers: Mapping[str, Transport[PushEnvelope]]) -> None:
        self.providers = dict(providers)

    async def send(self, envelope: PushEnvelope) -> Delivery:
        provider = self.providers.get(envelope.platform)
        if provider is None:
            raise PushError(envelope.platform, f"no [push.{envelope.platform}] provider is configured",
                            permanent=True)
        return await provider.send(envelope)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.providers.values()))
