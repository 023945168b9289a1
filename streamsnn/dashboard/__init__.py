"""A live browser dashboard fed by a pipeline's ZeroMQ predictions."""
