"""Static checks of the container deployment: Dockerfile, .dockerignore, docker-compose.yml."""
