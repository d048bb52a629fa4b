"""What runs in the container: the supervisor, nginx, the uvicorn workers."""
