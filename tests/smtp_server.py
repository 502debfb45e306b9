"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a free port, every mail kept.

Use it as a context manager::

    with SMTPTestServer() as server:
        ... send to ("127.0.0.1", server.port) ...
        [mail] = server.wait_for(1)

``tls_context`` offers STARTTLS, ``implicit_tls`` wraps the whole connection (port 465
style), ``credentials`` requires AUTH with that user and password.
"""

from __future__ import annotations

import email
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMail:
    """One accepted DATA: the envelope and raw bytes as received, and the parsed message.

    ``login`` is the AUTH user name, None when the client did not authenticate.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage
    login: str | None


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (also handy for "server down" tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class _Handler:
    def __init__(self, owner: SMTPTestServer) -> None:
        self._owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.content if isinstance(envelope.content, bytes) else (
            envelope.content.encode("utf-8", "surrogateescape")
        )
        # Parsed the way a mailbox stores it (LF line ends); ``data`` stays as received.
        message = email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=default_policy)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self._owner._record(ReceivedMail(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message=message,
            login=login,
        ))
        return "250 OK"


class SMTPTestServer:
    """Runs aiosmtpd in its own thread; ``wait_for`` blocks on a condition, not a sleep."""

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.host = HOST
        self.port = 0
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._credentials = credentials
        self._received: list[ReceivedMail] = []
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self._credentials is not None
            and (auth_data.login.decode(), auth_data.password.decode()) == self._credentials
        )
        # handled=False: let aiosmtpd answer 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _record(self, mail: ReceivedMail) -> None:
        with self._changed:
            self._received.append(mail)
            self._changed.notify_all()

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._changed:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least ``count`` mails arrived; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._received) >= count, timeout):
                raise AssertionError(
                    f"expected {count} mail(s) within {timeout} s, got {len(self._received)}"
                )
            return list(self._received)

    def start(self) -> None:
        kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 5.0}
        if self._implicit_tls:
            kwargs["ssl_context"] = self._tls_context
        elif self._tls_context is not None:
            kwargs["tls_context"] = self._tls_context
        if self._credentials is not None:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd only counts STARTTLS as TLS, so with implicit TLS AUTH is offered
            # but not enforced; tests check ReceivedMail.login instead.
            kwargs["auth_required"] = not self._implicit_tls
            kwargs["auth_require_tls"] = not self._implicit_tls
        last_error: OSError | None = None
        for _ in range(5):  # the free port can be taken between probe and bind
            port = free_port(self.host)
            controller = Controller(_Handler(self), hostname=self.host, port=port, **kwargs)
            try:
                controller.start()
            except OSError as exc:
                last_error = exc
                continue
            self._controller, self.port = controller, port
            return
        raise RuntimeError(f"cannot start the test SMTP server: {last_error}")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SMTPTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
