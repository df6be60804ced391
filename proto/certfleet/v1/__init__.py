"""certfleet.v1: generated protobuf and gRPC modules. Regenerate with proto/generate.py."""
