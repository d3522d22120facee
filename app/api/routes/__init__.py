"""One module per resource; `public_routers` are the public ones (writes and admin: see `create_app`).

The app includes each directly rather than through one joining router: FastAPI matches a request
level by level, and every level costs the hottest route a little on each request.
"""

from app.api.routes import movies, operations, predictions, ratings, recommendations

public_routers = [module.router for module in (recommendations, predictions, ratings, movies, operations)]
