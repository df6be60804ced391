"""Discovery beyond files: TLS endpoints, listening sockets, which process serves which certificate."""
