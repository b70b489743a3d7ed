"""Payment gateways: one module each (``stripe``, ``chargily``) behind ``base.PaymentGateway``.

Adding a gateway is one module here (its client, checkout, event verification and mapping, and
a ``GATEWAY`` object) and one line in ``billing.registry.PAYMENT_GATEWAYS``, plus its
``Gateway`` choice and event table in ``billing.models``. Gateways use billing's services;
services find gateways through the registry, never by import.
"""
