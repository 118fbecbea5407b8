"""`upload` and `remove`: bundles onto and off agents.

An upload is one request id for the whole conversation: BUNDLE_BEGIN (the
server answers BUNDLE_READY with the offset it already holds, so a broken
upload resumes instead of starting over), BUNDLE_CHUNKs without replies,
then BUNDLE_END, answered with per-agent RESULTS once the server has checked
the SHA-256 and pushed the bundle to the agents that are online.
"""
from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from admin_console.bounds import agent_selector
from admin_console.commands.base import Context
from admin_console.commands.results import ResultsCommand, expect_results
from admin_console.parsing import CommandParser, check_name
from admin_console.progress import Progress
from lotc.bundle_source import PackedBundle, pack
from lotc.errors import InternalError
from protocol.message_types import DEFAULT_CHUNK_SIZE
from protocol.messages import (
    AgentResult,
    BundleBegin,
    BundleChunk,
    BundleEnd,
    BundleReady,
    BundleRemove,
)

if TYPE_CHECKING:
    from admin_console.client import Exchange

logger = logging.getLogger(__name__)

# After BUNDLE_END the server verifies the bundle and pushes it to every online
# target before answering: allow for a large bundle over a slow link.
UPLOAD_FINISH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class UploadArgs:
    target: str
    name: str
    path: Path


class UploadCommand(ResultsCommand):
    """Upload a file or a directory as bundle NAME to AGENT.

    A directory is sent as a tar archive (the same tree always gives the same
    SHA-256, so re-uploading an unchanged tree costs nothing on agents that
    hold it). A single file keeps its own file name inside the bundle, so
    `upload n tool ./tool.py` then `start n tool -- python3 tool.py` works.
    An interrupted upload resumes where it stopped. A progress bar
    is drawn on stderr when it is a terminal. Agents that are offline get the
    bundle when they reconnect.

    Examples:
      upload all web ./build/web
      upload node-1 tool ./tool.py
    """

    name = "upload"
    usage = "upload AGENT NAME PATH"
    arguments = ("agent", "bundle", "path")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("bundle")
        parser.add_argument("path")

    def parse(self, argv: Sequence[str]) -> UploadArgs:
        args: argparse.Namespace = self.parser.parse(argv)
        return UploadArgs(args.agent, check_name("bundle", args.bundle), Path(args.path))

    async def execute(self, ctx: Context, parsed: UploadArgs) -> tuple[AgentResult, ...]:
        client = ctx.require_client()
        packed = await trio.to_thread.run_sync(
            functools.partial(pack, parsed.path, alias=parsed.name))
        with packed:
            progress = Progress(f"upload {parsed.name}", packed.size,
                                ctx.err if ctx.progress else None)
            exchange = client.open_exchange()
            try:
                return await _upload(exchange, parsed, packed, progress)
            finally:
                exchange.close()
                progress.finish()



async def _upload(exchange: Exchange, args: UploadArgs, packed: PackedBundle,
                  progress: Progress) -> tuple[AgentResult, ...]:
    await exchange.send(BundleBegin(target=args.target, name=args.name, kind=packed.kind,
                                    size=packed.size, sha256=bytes.fromhex(packed.sha256)))
    ready = (await exchange.next_frame()).body
    if not isinstance(ready, BundleReady):
        raise InternalError(f"the server answered BUNDLE_BEGIN with {type(ready).__name__}")
    if ready.offset:
        logger.info("resuming upload of %s at byte %d", args.name, ready.offset)
    progress.update(ready.offset)
    sent = ready.offset
    for offset, data in packed.chunks(DEFAULT_CHUNK_SIZE, start=ready.offset):
        # the server answers a bad chunk with ERROR at once and ignores the rest:
        # poll() raises it here instead of after the whole file was sent
        exchange.poll()
        await exchange.send(BundleChunk(offset=offset, data=data))
        sent = offset + len(data)
        progress.update(sent)
    await exchange.send(BundleEnd(size=sent))
    return expect_results((await exchange.next_frame(UPLOAD_FINISH_TIMEOUT_S)).body)


class RemoveCommand(ResultsCommand):
    """Remove bundle NAME from AGENT.

    Refused while a process that is meant to run uses the bundle: terminate
    it first. Offline agents drop the bundle when they reconnect.

    Examples:
      remove node-1 web
      remove all old-tool
    """

    name = "remove"
    usage = "remove AGENT NAME"
    arguments = ("agent", "bundle")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("agent", type=agent_selector)
        parser.add_argument("bundle")

    def parse(self, argv: Sequence[str]) -> BundleRemove:
        args: argparse.Namespace = self.parser.parse(argv)
        return BundleRemove(target=args.agent, name=check_name("bundle", args.bundle))
