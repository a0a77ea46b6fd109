# Importing a task module from models (a common way to connect signals) defines its tasks before
# the qtasks app is configured: the backend registers them once it is.
from mailing import early  # noqa: F401
