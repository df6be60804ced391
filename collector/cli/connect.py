"""The CLI's connection to the collector: one mutual-TLS channel from the client config, and a
failed call's status as a line for the user."""
from __future__ import annotations

import grpc

from collector.config.client import ClientConfig
from collector.errors import RETRY_AFTER_METADATA, CollectorError

MAX_RECEIVE = 32 * 1024 * 1024     # a page of certificates with their locations can be large


def open_channel(cfg: ClientConfig) -> grpc.Channel:
    """A channel to ``cfg.collector`` presenting the admin identity and trusting only ``cfg.ca``."""
    try:
        creds = grpc.ssl_channel_credentials(
            root_certificates=cfg.ca.read_bytes(),
            private_key=cfg.key.read_bytes(),
            certificate_chain=cfg.certificate.read_bytes(),
        )
    except OSError as e:
        raise CollectorError(f"cannot read the admin identity ({e.filename}): {e.strerror}") from None
    options = [("grpc.max_receive_message_length", MAX_RECEIVE)]
    if cfg.server_name:
        options.append(("grpc.ssl_target_name_override", cfg.server_name))
    return grpc.secure_channel(cfg.collector, creds, options=options)


def rpc_error_text(e: grpc.RpcError, collector: str) -> str:
    """What went wrong with a call to the collector at ``collector``, without the ``certfleet:`` prefix."""
    code = e.code()
    details = e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        retry = _retry_after(e)
        if retry is not None:       # the collector answered: its database is down
            return f"the collector's database is unavailable, retry in {retry} s (nothing was changed)"
        return f"cannot reach the collector at {collector}: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the collector at {collector} did not answer in time"
    return f"{code.name.lower().replace('_', ' ')}: {details}"


def _retry_after(e: grpc.RpcError) -> str | None:
    """The collector's retry hint (seconds) on a call it refused while its database is down."""
    trailing = getattr(e, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == RETRY_AFTER_METADATA:
            return value if str(value).isdigit() else "a few"
    return None
