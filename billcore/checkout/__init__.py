"""The client area: dashboard, adding funds, payments and return pages."""
