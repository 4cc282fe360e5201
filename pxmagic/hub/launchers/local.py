"""``--engines local``: engine kernels started on this host by jupyter_client.

Each engine is a :class:`~pxmagic.hub.engines.LocalEngine`: its kernel
manager stops it with the hub and can restart it alone, so this launcher
owns no job of its own.
"""
from __future__ import annotations

import asyncio

from ..engines import LocalEngine
from ..options import KERNEL_NAME
from . import LaunchContext, Launcher


class LocalLauncher(Launcher):
    """Start ``n`` kernels of kernelspec ``kernel_name`` at once."""

    label = "local"

    def __init__(self, kernel_name: str = KERNEL_NAME):
        super().__init__()
        self.kernel_name = kernel_name

    async def start(self, n: int, context: LaunchContext) -> None:
        starts = [
            LocalEngine.start(i, context.session, context.security_dir, self.kernel_name)
            for i in range(n)
        ]
        results = await asyncio.gather(*starts, return_exceptions=True)
        for result in results:
            if isinstance(result, LocalEngine):
                context.admit(result)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise failed[0]
