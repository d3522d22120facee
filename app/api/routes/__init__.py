"""One module per resource; `api_router` joins the public ones."""

from fastapi import APIRouter

from app.api.routes import movies, operations, predictions, recommendations, users

api_router = APIRouter()
for module in (recommendations, predictions, users, movies, operations):
    api_router.include_router(module.router)
