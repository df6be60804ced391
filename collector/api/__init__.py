"""Thin gRPC servicers: messages in, domain calls, messages out, errors to status codes."""
