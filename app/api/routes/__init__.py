"""One module per resource; `api_router` joins the public ones (writes and admin: see `create_app`)."""

from fastapi import APIRouter

from app.api.routes import movies, operations, predictions, ratings, recommendations

api_router = APIRouter()
for module in (recommendations, predictions, ratings, movies, operations):
    api_router.include_router(module.router)
