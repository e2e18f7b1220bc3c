"""Signed TEDAPI ``v1r`` messages: protobuf envelopes, RSA signatures, their verification."""
