from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Answer load balancers: 200 when the database answers, 503 when not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"database": "down"}, status=503)
    return JsonResponse({"database": "ok"})


def preferences(request, token):
    """The supporter's preference centre (built with the self-service pages)."""
    return JsonResponse({"detail": "not available yet"}, status=501)


def unsubscribe(request, token):
    """One-click unsubscribe, RFC 8058 (built with the self-service pages)."""
    return JsonResponse({"detail": "not available yet"}, status=501)
