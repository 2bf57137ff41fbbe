"""stream_handler: MSK event source -> pushes through the API Gateway Management API."""
