"""The dashboard page: static files served by the gateway (gateway/dashboard.py)."""
