"""The live match page: static assets served by the gateway (see ``gateway.web.static``)."""
