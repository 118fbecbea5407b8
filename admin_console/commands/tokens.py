"""`token create` and `token revoke`, through the server (for admins without the DB file)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from admin_console.commands.base import Command, Context
from admin_console.errors import UsageError
from admin_console.parsing import CommandParser, check_name
from admin_console.render import dumps
from lotc.errors import InternalError
from protocol.enums import Role
from protocol.messages import Ok, Token, TokenCreate, TokenRevoke


@dataclass(frozen=True)
class TokenResult:
    request: TokenCreate | TokenRevoke
    reply: Token | Ok


class TokenCommand(Command):
    """Create a token for an agent or an administrator, or revoke one.

    `token create` prints the new token once: give it to the agent
    (--token) or the administrator (LOTC_TOKEN). `token revoke NAME` makes
    NAME's token useless at once; live connections that used it are cut.

    Examples:
      token create --agent node-3
      token create --admin alice
      token revoke node-3
    """

    name = "token"
    usage = "token create --agent NAME | token create --admin NAME | token revoke NAME"
    arguments = ("word", "agent")

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="create|revoke")
        create = actions.add_parser("create", usage=self.usage, add_help=False)
        who = create.add_mutually_exclusive_group(required=True)
        who.add_argument("--agent", metavar="NAME")
        who.add_argument("--admin", metavar="NAME")
        revoke = actions.add_parser("revoke", usage=self.usage, add_help=False)
        revoke.add_argument("who", metavar="NAME")

    def parse(self, argv: Sequence[str]) -> TokenCreate | TokenRevoke:
        if not argv or argv[0] not in ("create", "revoke"):
            raise UsageError("say 'token create' or 'token revoke'", self.usage)
        args = self.parser.parse(argv)
        if args.action == "revoke":
            return TokenRevoke(name=check_name("token", args.who))
        if args.agent is not None:
            return TokenCreate(role=Role.AGENT, name=check_name("agent", args.agent))
        return TokenCreate(role=Role.ADMIN, name=check_name("admin", args.admin))

    async def execute(self, ctx: Context, parsed: TokenCreate | TokenRevoke) -> TokenResult:
        reply = (await ctx.require_client().request(parsed))[-1].body
        if not isinstance(reply, (Token, Ok)):
            raise InternalError(f"the server answered {type(reply).__name__} to token")
        return TokenResult(parsed, reply)

    def render(self, result: TokenResult, json: bool) -> str:
        request, reply = result.request, result.reply
        document: dict[str, Any]
        if isinstance(request, TokenCreate):
            token = reply.token if isinstance(reply, Token) else ""
            document = {"action": "create", "role": request.role, "name": request.name,
                        "token": token}
            text = token
        else:
            document = {"action": "revoke", "name": request.name}
            text = f"revoked {request.name}"
        return dumps(document) if json else text
