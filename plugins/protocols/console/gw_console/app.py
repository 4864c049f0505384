"""The console's pages and JSON API, and who may do what on them.

Every request is authorised here, page or API: a person is logged in (a session cookie, or a bearer token on
the API) and admitted by the listener's identity providers and ``allow_groups``; approving and denying are
decided by the approve plugin's rules (an approver of that request, never its requester); ending a session
needs ``operator_groups``.  Everything shown comes from the stores' masked records, and what people type is
escaped before display (control, bidirectional and zero-width characters shown as escapes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
import trio
from gw.errors import AccessDenied, AuthenticationError, GwError, PluginError
from gw.identity import Credential
from gw.model import Identity

from . import auth
from .display import human_left, iso, visible
from .web import Request, Response

if TYPE_CHECKING:
    from .handler import ConsoleHandler

log = logging.getLogger("gw.console")

#: Terminal protocols whose recordings replay in the player.
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}
#: How often the live approvals stream looks for changes, and sends a keep-alive comment.
_POLL = 1.0
_KEEPALIVE = 15.0

Handler = Callable[[Request, "Ctx"], Awaitable[Response]]


class NotFound(GwError):
    pass


class Forbidden(GwError):
    pass


class Ctx:
    """Who is asking, and how they proved it."""

    def __init__(self, identity: Identity, session: auth.ConsoleSession | None) -> None:
        self.identity = identity
        self.session = session

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session is not None else ""


class Console:
    def __init__(self, handler: ConsoleHandler) -> None:
        self.handler = handler
        self.listener = handler.listener
        opts = handler.console_options
        self.options = opts
        longest = opts.session_max.total_seconds() if opts.session_max is not None else 12 * 3600.0
        self.sessions = auth.SessionTable(idle=opts.session_idle.total_seconds(), longest=longest)
        self.login_csrf = auth.LoginCsrf()
        self.limiter = auth.LoginLimiter(attempts=opts.login_attempts)
        self.oidc = self._oidc_client()
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("gw_console", "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        )
        self.env.filters["visible"] = visible
        self.env.filters["iso"] = iso
        self.env.filters["left"] = human_left
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._route_table()

    # -- wiring ---------------------------------------------------------------------------------------------
    def _oidc_client(self) -> auth.OidcClient | None:
        o = self.options.oidc
        if o is None:
            return None
        names = [o.identity] if o.identity else self.options.identities
        issuer = None
        for name in names:
            provider = self.listener.runtime.identity.get(name)
            issuer = getattr(getattr(provider, "options", None), "issuer", None) if provider else None
            if isinstance(issuer, str) and issuer.startswith(("http://", "https://")):
                break
            issuer = None
        if issuer is None:
            raise GwError(f"listener {self.options.name!r}: oidc needs an identity provider with an OIDC "
                          f"issuer URL among {', '.join(names)}")
        secret = os.environ.get(o.client_secret_env) if o.client_secret_env else None
        return auth.OidcClient(issuer=issuer, client_id=o.client_id, client_secret=secret,
                               redirect_url=o.redirect_url, scopes=o.scopes)

    def _route_table(self) -> None:
        r = self._route
        r("GET", "/", self.home)
        r("GET", "/approvals", self.approvals_page)
        r("GET", "/approvals/rows", self.approvals_rows)
        r("GET", "/approvals/events", self.approvals_events)
        r("POST", "/approvals/(?P<rid>[a-z0-9-]+)/approve", self.approve_form)
        r("POST", "/approvals/(?P<rid>[a-z0-9-]+)/deny", self.deny_form)
        r("POST", "/grants", self.grant_form)
        r("POST", "/grants/(?P<gid>[a-z0-9-]+)/revoke", self.revoke_form)
        r("GET", "/sessions", self.sessions_page)
        r("POST", "/sessions/(?P<sid>[A-Za-z0-9_-]+)/end", self.end_session_form)
        r("GET", "/sessions/(?P<sid>[A-Za-z0-9_-]+)", self.session_page)
        r("GET", "/audit", self.audit_page)
        r("GET", "/audit/export", self.audit_export)
        r("POST", "/logout", self.logout)
        r("GET", "/api/me", self.api_me)
        r("GET", "/api/approvals", self.api_approvals)
        r("GET", "/api/approvals/(?P<rid>[a-z0-9-]+)", self.api_approval)
        r("POST", "/api/approvals/(?P<rid>[a-z0-9-]+)/approve", self.api_approve)
        r("POST", "/api/approvals/(?P<rid>[a-z0-9-]+)/deny", self.api_deny)
        r("GET", "/api/grants", self.api_grants)
        r("POST", "/api/grants", self.api_grant)
        r("POST", "/api/grants/(?P<gid>[a-z0-9-]+)/revoke", self.api_revoke)
        r("GET", "/api/sessions", self.api_sessions)
        r("POST", "/api/sessions/(?P<sid>[A-Za-z0-9_-]+)/end", self.api_end_session)
        r("GET", "/api/sessions/(?P<sid>[A-Za-z0-9_-]+)/recording", self.api_recording)
        r("GET", "/api/audit", self.api_audit)
        r("GET", "/api/audit/verify", self.api_verify)

    def _route(self, method: str, pattern: str, fn: Handler) -> None:
        self.routes.append((method, re.compile(pattern + "$"), fn))

    def offer(self, name: str) -> Any:
        return self.listener.runtime.offer(name)

    def has_offer(self, name: str) -> bool:
        try:
            self.offer(name)
        except PluginError:
            return False
        return True

    # -- the request cycle ----------------------------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        path = request.path
        method = "GET" if request.method == "HEAD" else request.method
        if path.startswith("/static/") and method == "GET":
            return self._static(path.removeprefix("/static/"))
        if path == "/login":
            if method == "GET":
                return self.login_page(request)
            if method == "POST":
                return await self.login(request)
        if path == "/login/oidc" and method == "GET":
            return await self.oidc_start(request)
        if path == "/login/callback" and method == "GET":
            return await self.oidc_callback(request)
        api = path.startswith("/api/")
        allowed = []
        for m, pattern, fn in self.routes:
            found = pattern.match(path)
            if found is None:
                continue
            allowed.append(m)
            if m != method:
                continue
            ctx = await self._who(request, api=api)
            if isinstance(ctx, Response):
                return ctx
            if method == "POST" and ctx.session is not None:
                supplied = request.headers.get("x-csrf-token") or request.form().get("csrf", "")
                if not auth.same(supplied, ctx.session.csrf):
                    return self._error(request, 403, "the form's security token is missing or stale; "
                                       "reload the page and try again", api=api)
            request.params = found.groupdict()
            try:
                return await fn(request, ctx)
            except NotFound as e:
                return self._error(request, 404, str(e), api=api, ctx=ctx)
            except GwError as e:
                forbidden = isinstance(e, (AccessDenied, Forbidden))
                return self._error(request, 403 if forbidden else 409, str(e), api=api, ctx=ctx)
        ctx = await self._who(request, api=api)  # nothing about what exists is told before a login
        if isinstance(ctx, Response):
            return ctx
        if allowed:
            return Response(405, b"method not allowed\n", "text/plain; charset=utf-8",
                            [("allow", ", ".join(sorted(set(allowed))))])
        return self._error(request, 404, "no such page", api=api, ctx=ctx)

    async def _who(self, request: Request, *, api: bool) -> Ctx | Response:
        header = request.headers.get("authorization", "")
        if api and header.lower().startswith("bearer "):
            try:
                identity = await self.listener.resolve(Credential("token", header[7:].strip()))
            except AuthenticationError as e:
                return Response.json({"error": str(e)}, 403 if isinstance(e, AccessDenied) else 401)
            return Ctx(identity, None)
        session = self.sessions.get(request.cookies.get(auth.COOKIE))
        if session is None:
            if api:
                return Response.json({"error": "log in first: send Authorization: Bearer TOKEN, or use the "
                                               "console's session cookie"}, 401)
            return Response.redirect("/login")
        try:
            self.listener.check_revoked(session.identity)
        except AccessDenied as e:
            self.sessions.close(session.id)
            return self._error(request, 403, str(e), api=api)
        return Ctx(session.identity, session)

    def _static(self, name: str) -> Response:
        if not re.fullmatch(r"[a-z0-9_-]+\.(css|js|svg)", name):
            return Response.text("not found\n", 404)
        try:
            data = resources.files("gw_console").joinpath("static", name).read_bytes()
        except (FileNotFoundError, OSError):
            return Response.text("not found\n", 404)
        ext = name[name.rindex("."):]
        return Response(200, data, _STATIC_TYPES[ext], [("cache-control", "max-age=300")])

    def render(self, template: str, ctx: Ctx | None, code: int = 200, **values: Any) -> Response:
        flash = []
        if ctx is not None and ctx.session is not None:
            flash, ctx.session.flash = ctx.session.flash, []
        page = self.env.get_template(template).render(
            me=ctx.identity if ctx else None, csrf=ctx.csrf if ctx else "", flash=flash,
            operator=self._operator(ctx.identity) if ctx else False, now=time.time(),
            listener=self.options.name, **values)
        return Response(code, page.encode(), "text/html; charset=utf-8")

    def _error(self, request: Request, status: int, message: str, *, api: bool, ctx: Ctx | None = None
               ) -> Response:
        if api:
            return Response.json({"error": message}, status)
        return self.render("error.html", ctx, status, status=status, message=message)

    def _flash(self, ctx: Ctx, kind: str, text: str) -> None:
        if ctx.session is not None:
            ctx.session.flash.append((kind, text))

    def _operator(self, identity: Identity) -> bool:
        return identity.in_any(self.options.operator_groups)

    async def _event(self, event: str, ctx: Ctx | Identity, client: str, **details: Any) -> None:
        identity = ctx.identity if isinstance(ctx, Ctx) else ctx
        if not self.has_offer("audit"):
            log.info("console %s by %s: %s", event, identity.subject, details)
            return
        await self.offer("audit").event(event, identity, details={"listener": self.options.name, **details},
                                        client_address=client)

    # -- login ----------------------------------------------------------------------------------------------
    def _cookie(self, request: Request, name: str, value: str, *, max_age: int | None = None) -> str:
        parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax" if name != auth.COOKIE
                 else "SameSite=Strict"]
        if request.https:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    def login_page(self, request: Request, *, status: int = 200, message: str = "") -> Response:
        pre = request.cookies.get(auth.PRE_COOKIE) or self.login_csrf.new_cookie()
        response = self.render("login.html", None, status, login_csrf=self.login_csrf.token(pre),
                               message=message, oidc=self.oidc is not None)
        response.headers.append(("set-cookie", self._cookie(request, auth.PRE_COOKIE, pre, max_age=3600)))
        return response

    async def login(self, request: Request) -> Response:
        wait = self.limiter.blocked(request.client)
        if wait > 0:
            response = self.login_page(request, status=429,
                                       message=f"too many failed logins from your address; try again in "
                                               f"{int(wait) + 1} s")
            response.headers.append(("retry-after", str(int(wait) + 1)))
            return response
        form = request.form()
        if not self.login_csrf.check(request.cookies.get(auth.PRE_COOKIE), form.get("csrf")):
            return self.login_page(request, status=403, message="the login form expired; try again")
        token = form.get("token", "").strip()
        if not token:
            return self.login_page(request, status=400, message="paste a token into the Token field")
        return await self._log_in(request, token, method="token", next_path="/approvals")

    async def _log_in(self, request: Request, token: str, *, method: str, next_path: str) -> Response:
        try:
            identity = await self.listener.resolve(Credential("token", token))
        except AuthenticationError as e:
            self.limiter.failed(request.client)
            log.info("console %s: login from %s refused: %s", self.options.name, request.client, e)
            return self.login_page(request, status=403 if isinstance(e, AccessDenied) else 401,
                                   message=str(e))
        self.limiter.succeeded(request.client)
        session = self.sessions.open(identity, client=request.client, method=method)
        await self._event("console_login", identity, request.client, method=method)
        response = Response.redirect(next_path if next_path.startswith("/") and not next_path.startswith("//")
                                     else "/approvals")
        response.headers.append(("set-cookie", self._cookie(request, auth.COOKIE, session.id)))
        return response

    async def oidc_start(self, request: Request) -> Response:
        if self.oidc is None:
            return self.login_page(request, status=404, message="single sign-on is not configured here")
        try:
            url, state = await self.oidc.start("/approvals")
        except auth.OidcError as e:
            return self.login_page(request, status=502, message=str(e))
        response = Response.redirect(url, 302)
        response.headers.append(("set-cookie", self._cookie(request, "gw_console_state", state, max_age=600)))
        return response

    async def oidc_callback(self, request: Request) -> Response:
        if self.oidc is None:
            return self.login_page(request, status=404, message="single sign-on is not configured here")
        q = request.query
        if "error" in q:
            return self.login_page(request, status=401, message=f"the identity provider refused: "
                                   f"{q.get('error_description') or q['error']}")
        wait = self.limiter.blocked(request.client)
        if wait > 0:
            return self.login_page(request, status=429, message="too many failed logins; try again later")
        try:
            id_token, next_path = await self.oidc.finish(code=q.get("code", ""), state=q.get("state", ""),
                                                         cookie_state=request.cookies.get("gw_console_state"))
        except auth.OidcError as e:
            self.limiter.failed(request.client)
            return self.login_page(request, status=401, message=str(e))
        return await self._log_in(request, id_token, method="oidc", next_path=next_path)

    async def logout(self, request: Request, ctx: Ctx) -> Response:
        if ctx.session is not None:
            self.sessions.close(ctx.session.id)
            await self._event("console_logout", ctx, request.client)
        response = Response.redirect("/login")
        response.headers.append(("set-cookie", self._cookie(request, auth.COOKIE, "", max_age=0)))
        return response

    # -- approvals ------------------------------------------------------------------------------------------
    async def home(self, request: Request, ctx: Ctx) -> Response:
        return Response.redirect("/approvals")

    async def _requests(self, ctx: Ctx, *, statuses: tuple[str, ...] = (), everything: bool = False,
                        limit: int = 100) -> list[dict[str, Any]]:
        if not self.has_offer("approvals"):
            return []
        offer = self.offer("approvals")
        found: list[dict[str, Any]] = await offer.requests(statuses=statuses, everything=everything, limit=limit)
        for r in found:
            r["may_decide"] = offer.may_decide(r, ctx.identity)
        return found

    async def approvals_page(self, request: Request, ctx: Ctx) -> Response:
        pending = await self._requests(ctx)
        decided = [r for r in await self._requests(ctx, everything=True, limit=50) if r["status"] != "pending"]
        grants = await self.offer("approvals").grants() if self.has_offer("approvals") else []
        approver = bool(self.has_offer("approvals")
                        and ctx.identity.in_any(self.offer("approvals").approver_groups()))
        return self.render("approvals.html", ctx, pending=pending, decided=decided, grants=grants,
                           approver=approver, installed=self.has_offer("approvals"),
                           listeners=sorted(n for n, lr in self.listener.runtime.listeners.items()
                                            if lr.options.pipeline is not None))

    async def approvals_rows(self, request: Request, ctx: Ctx) -> Response:
        return self.render("approval_rows.html", ctx, pending=await self._requests(ctx))

    async def approvals_events(self, request: Request, ctx: Ctx) -> Response:
        """Server-sent events: ``approvals`` whenever the pending requests change (the page then fetches
        /approvals/rows), a comment every 15 s to keep proxies from closing the stream."""
        async def events() -> AsyncIterator[bytes]:
            last = None
            quiet = 0.0
            yield b"retry: 2000\n\n"
            while not self.listener.shutting_down.is_set():
                if ctx.session is not None and self.sessions.get(ctx.session.id) is None:
                    yield b"event: logout\ndata: {}\n\n"
                    return
                found = await self._requests(ctx)
                mark = json.dumps([(r["id"], r["status"], len(r.get("approvals") or ())) for r in found])
                if mark != last:
                    last = mark
                    quiet = 0.0
                    yield f"event: approvals\ndata: {len(found)}\n\n".encode()
                elif quiet >= _KEEPALIVE:
                    quiet = 0.0
                    yield b": keep-alive\n\n"
                with trio.move_on_after(_POLL):
                    await self.listener.shutting_down.wait()
                quiet += _POLL

        return Response(200, content_type="text/event-stream; charset=utf-8", stream=events,
                        headers=[("x-accel-buffering", "no")])

    async def _decide(self, request: Request, ctx: Ctx, *, approve: bool, reason: str) -> dict[str, Any]:
        offer = self.offer("approvals")
        rid = request.params["rid"]
        found = await offer.request(rid)
        if found is None:
            raise NotFound(f"there is no approval request {rid}")
        if found["status"] == "pending" and not offer.may_decide(found, ctx.identity):
            who = ctx.identity.subject
            if who == found.get("subject"):
                raise Forbidden(f"{who} made request {rid} and cannot decide it; another approver must")
            raise Forbidden(f"{who} may not decide request {rid}: approvers must be in "
                            f"{', '.join(found.get('approvers') or ()) or '(none)'}")
        if approve:
            done = await offer.approve(rid, ctx.identity, reason=reason)
        else:
            done = await offer.deny(rid, ctx.identity, reason=reason)
        await self._event("console_approve" if approve else "console_deny", ctx, request.client,
                          request=done["id"], status=done["status"], reason=reason)
        return dict(done)

    async def approve_form(self, request: Request, ctx: Ctx) -> Response:
        done = await self._decide(request, ctx, approve=True, reason=request.form().get("reason", ""))
        self._flash(ctx, "ok", f"request {done['id']}: {done['status']}")
        return Response.redirect("/approvals")

    async def deny_form(self, request: Request, ctx: Ctx) -> Response:
        done = await self._decide(request, ctx, approve=False, reason=request.form().get("reason", ""))
        self._flash(ctx, "ok", f"request {done['id']}: denied")
        return Response.redirect("/approvals")

    async def _grant(self, request: Request, ctx: Ctx, values: dict[str, Any]) -> dict[str, Any]:
        from gw.config import parse_duration

        try:
            duration = parse_duration(str(values.get("duration") or "")).total_seconds()
        except ValueError as e:
            raise GwError(f"duration: {e}") from None
        made = await self.offer("approvals").grant(
            ctx.identity, subject=str(values.get("subject") or "").strip(),
            listener=str(values.get("listener") or ""), duration=duration,
            reason=str(values.get("reason") or ""))
        await self._event("console_grant", ctx, request.client, grant=made["id"], subject=made["subject"],
                          on=made["listener"])
        return dict(made)

    async def grant_form(self, request: Request, ctx: Ctx) -> Response:
        made = await self._grant(request, ctx, dict(request.form()))
        self._flash(ctx, "ok", f"grant {made['id']} for {made['subject']} on {made['listener']}")
        return Response.redirect("/approvals")

    async def revoke_form(self, request: Request, ctx: Ctx) -> Response:
        gid = request.params["gid"]
        done = await self.offer("approvals").revoke(gid, ctx.identity)
        await self._event("console_revoke", ctx, request.client, grant=done["id"])
        self._flash(ctx, "ok", f"grant {done['id']} revoked")
        return Response.redirect("/approvals")

    # -- sessions -------------------------------------------------------------------------------------------
    def _live(self) -> list[dict[str, Any]]:
        out = []
        for rt in self.listener.runtime.sessions():
            s = rt.session
            out.append({"id": s.id, "subject": s.identity.subject, "groups": list(s.identity.groups),
                        "listener": s.listener, "protocol": s.protocol, "client": s.client_address,
                        "upstream": s.upstream, "started": s.started_at, "commands": rt.commands})
        return sorted(out, key=lambda d: d["started"], reverse=True)

    async def _recorded(self, limit: int = 100) -> list[dict[str, Any]]:
        if not self.has_offer("recordings") or self.listener.runtime.store is None:
            return []
        return list(await self.offer("recordings").sessions(limit=limit))

    async def sessions_page(self, request: Request, ctx: Ctx) -> Response:
        return self.render("sessions.html", ctx, live=self._live(), recorded=await self._recorded())

    async def _end(self, request: Request, ctx: Ctx) -> str:
        if not self._operator(ctx.identity):
            raise AccessDenied(f"{ctx.identity.subject} may not end sessions: that needs one of the groups "
                               f"{', '.join(self.options.operator_groups) or '(none configured)'}")
        sid = request.params["sid"]
        for rt in self.listener.runtime.sessions():
            if rt.session.id == sid:
                rt.terminate("revoked")
                await self._event("console_end_session", ctx, request.client, session=sid,
                                  subject=rt.session.identity.subject)
                return sid
        raise GwError(f"session {sid} is not live (it may have ended already)")

    async def end_session_form(self, request: Request, ctx: Ctx) -> Response:
        sid = await self._end(request, ctx)
        self._flash(ctx, "ok", f"session {sid} is being ended")
        return Response.redirect("/sessions")

    async def _recording(self, sid: str) -> tuple[dict[str, Any], list[list[Any]]] | None:
        if not self.has_offer("recordings") or self.listener.runtime.store is None:
            return None
        text = await self.offer("recordings").export(sid, "jsonl")
        if text is None:
            return None
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        return (lines[0] if lines else {}), lines[1:]

    async def session_page(self, request: Request, ctx: Ctx) -> Response:
        sid = request.params["sid"]
        found = await self._recording(sid)
        if found is None:
            return self._error(request, 404, f"no recording of session {sid}", api=False, ctx=ctx)
        header, events = found
        terminal = any(e[1] == "data" and isinstance(e[2], dict) and e[2].get("channel") in ("pty", "stdout")
                       for e in events if len(e) >= 3)
        timeline = [_timeline_entry(e) for e in events if len(e) >= 3 and e[1] != "data"][:2000]
        return self.render("session.html", ctx, sid=sid, header=header, terminal=terminal, timeline=timeline)

    # -- audit ----------------------------------------------------------------------------------------------
    def _audit_query(self, q: dict[str, str]) -> dict[str, Any]:
        def when(value: str) -> float | None:
            value = value.strip()
            if not value:
                return None
            try:
                return float(value)
            except ValueError:
                pass
            try:
                t = datetime.fromisoformat(value)
            except ValueError:
                raise GwError(f"{value!r} is not a time: use 2026-12-06T08:00 (UTC) or Unix seconds") from None
            return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()

        try:
            limit = max(1, min(1000, int(q.get("limit") or 100)))
        except ValueError:
            raise GwError("limit must be a number") from None
        return {"subject": q.get("user") or None, "listener": q.get("listener") or None,
                "verdict": q.get("verdict") or None, "kind": q.get("kind") or None, "text": q.get("text") or None,
                "since": when(q.get("since", "")), "until": when(q.get("until", "")), "limit": limit}

    async def audit_page(self, request: Request, ctx: Ctx) -> Response:
        q = request.query
        installed = self.has_offer("audit") and self.listener.runtime.store is not None
        records: list[dict[str, Any]] = []
        chains: list[dict[str, Any]] = []
        if installed:
            records = await self.offer("audit").search(**self._audit_query(q))
            if q.get("verify"):
                chains = await self.offer("audit").verify()
        return self.render("audit.html", ctx, q=q, records=records, chains=chains, installed=installed,
                           export_query=request.target.partition("?")[2])

    async def audit_export(self, request: Request, ctx: Ctx) -> Response:
        records = await self.offer("audit").search(**self._audit_query(request.query))
        body = "".join(json.dumps(r, default=str) + "\n" for r in records).encode()
        return Response(200, body, "application/x-ndjson",
                        [("content-disposition", 'attachment; filename="gw-audit.jsonl"')])

    # -- JSON API -------------------------------------------------------------------------------------------
    def _body(self, request: Request) -> dict[str, Any]:
        try:
            return request.json() if request.body.strip() else dict(request.form())
        except ValueError as e:
            raise GwError(f"the body is not a JSON object: {e}") from None

    async def api_me(self, request: Request, ctx: Ctx) -> Response:
        return Response.json({"subject": ctx.identity.subject, "groups": list(ctx.identity.groups),
                              "operator": self._operator(ctx.identity), "csrf": ctx.csrf or None})

    async def api_approvals(self, request: Request, ctx: Ctx) -> Response:
        status = request.query.get("status", "")
        everything = status == "all"
        statuses = () if everything or not status else tuple(s for s in status.split(",") if s)
        try:
            return Response.json(await self._requests(ctx, statuses=statuses, everything=everything))
        except ValueError as e:
            raise GwError(f"status: {e}") from None

    async def api_approval(self, request: Request, ctx: Ctx) -> Response:
        found = await self.offer("approvals").request(request.params["rid"])
        if found is None:
            return Response.json({"error": "no such approval request"}, 404)
        found["may_decide"] = self.offer("approvals").may_decide(found, ctx.identity)
        return Response.json(found)

    async def api_approve(self, request: Request, ctx: Ctx) -> Response:
        body = self._body(request)
        return Response.json(await self._decide(request, ctx, approve=True, reason=str(body.get("reason", ""))))

    async def api_deny(self, request: Request, ctx: Ctx) -> Response:
        body = self._body(request)
        return Response.json(await self._decide(request, ctx, approve=False, reason=str(body.get("reason", ""))))

    async def api_grants(self, request: Request, ctx: Ctx) -> Response:
        return Response.json(await self.offer("approvals").grants(everything=request.query.get("all") == "1"))

    async def api_grant(self, request: Request, ctx: Ctx) -> Response:
        return Response.json(await self._grant(request, ctx, self._body(request)), 201)

    async def api_revoke(self, request: Request, ctx: Ctx) -> Response:
        gid = request.params["gid"]
        done = await self.offer("approvals").revoke(gid, ctx.identity)
        await self._event("console_revoke", ctx, request.client, grant=done["id"])
        return Response.json(done)

    async def api_sessions(self, request: Request, ctx: Ctx) -> Response:
        return Response.json({"live": self._live(), "recorded": await self._recorded()})

    async def api_end_session(self, request: Request, ctx: Ctx) -> Response:
        return Response.json({"ended": await self._end(request, ctx)})

    async def api_recording(self, request: Request, ctx: Ctx) -> Response:
        sid = request.params["sid"]
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("jsonl", "asciicast") or not self.has_offer("recordings"):
            return Response.json({"error": "format must be jsonl or asciicast"}, 400)
        text = await self.offer("recordings").export(sid, fmt)
        if text is None:
            return Response.json({"error": f"no recording of session {sid}"}, 404)
        return Response(200, text.encode(), "application/x-ndjson" if fmt == "jsonl"
                        else "application/x-asciicast")

    async def api_audit(self, request: Request, ctx: Ctx) -> Response:
        return Response.json(await self.offer("audit").search(**self._audit_query(request.query)))

    async def api_verify(self, request: Request, ctx: Ctx) -> Response:
        return Response.json(await self.offer("audit").verify())


def _timeline_entry(event: list[Any]) -> dict[str, Any]:
    t, kind, payload = event[0], event[1], event[2]
    p = payload if isinstance(payload, dict) else {"value": payload}
    return {"t": t, "type": kind, "payload": p}
