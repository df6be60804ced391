"""certfleet wire contract (generated stubs live beside the .proto files)."""
