"""The dashboard's routes, one APIRouter per concern; create_app includes them (auth is app-level)."""
