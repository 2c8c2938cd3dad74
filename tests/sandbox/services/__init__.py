"""The AWS services the sandbox emulates itself (moto-style: models / responses / exceptions)."""
