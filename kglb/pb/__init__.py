"""Generated protobuf modules of kglb's schema (proto/kglb/pb); regenerate with tools/gen-proto.sh."""
