"""MLflow: the server's client, and registered versions as pyfunc models logged as code."""
