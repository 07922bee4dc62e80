"""POST /webhooks/stripe/: Stripe's signed event deliveries (billing.webhooks does the work).

No session, no CSRF token (Stripe is not a browser): the signature is the authentication. Any
unsigned, wrongly signed or stale delivery is a 400 and changes nothing; a handled or repeated
event is a 200, so Stripe stops resending it."""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from carnet.core.errors import CarnetError

from .webhooks import event_handle

MAX_BODY = 512 * 1024  # Stripe's events are a few kilobytes


@csrf_exempt
@require_POST
def stripe_webhook(request):
    if len(request.body) > MAX_BODY:
        return JsonResponse(
            {"error": "too_large", "detail": "This event is too large."}, status=400
        )
    try:
        outcome = event_handle(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except CarnetError as exc:
        if (
            exc.status >= 500
        ):  # Stripe unreachable while resolving: Stripe sends the event again later
            return JsonResponse({"error": exc.code, "detail": exc.message}, status=503)
        return JsonResponse({"error": exc.code, "detail": exc.message}, status=400)
    return JsonResponse({"received": True, "outcome": outcome})
