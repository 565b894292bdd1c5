"""The local API: an OpenAI-compatible HTTP server on the loopback interface (``bastion serve``).

``protocol`` checks requests and shapes responses, ``service`` runs the model work on one
thread, ``server`` guards and routes HTTP, ``access_token`` keeps the bearer token and
``wiring`` builds the service's parts from the application.
"""
