from django.apps import AppConfig


class PeopleConfig(AppConfig):
    name = "carnet.people"
    label = "people"

    def ready(self):
        # late: these modules load models, which only exist once the app registry is ready
        from carnet.core.idempotency import bearer_owner_register

        from . import selectors

        def bearer_owner(request, raw: str) -> int | None:
            token = selectors.api_token_for_request(request, raw)
            return token.staff.user_id if token else None

        # Idempotency keys of API calls are scoped to the token's user (core.idempotency).
        bearer_owner_register(bearer_owner)
