"""POST /notes/ adds a note (retrying a lost race, the pattern the README shows); GET
/notes/<id>/ says whether the replica read finds it."""

import time

from django.db import OperationalError, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ltxvfs.django import is_lost_race

from .models import Note


def _retrying(work, attempts=20):
    """Runs ``work`` in a transaction; a commit another writer beat is retried."""
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                return work(), attempt
        except OperationalError as e:
            if not is_lost_race(e) or attempt == attempts - 1:
                raise
            time.sleep(0.005 * (attempt + 1))


@csrf_exempt
def add(request):
    note, retries = _retrying(
        lambda: Note.objects.create(text=request.POST["text"], writer=request.POST.get("writer", ""))
    )
    return JsonResponse({"id": note.pk, "retries": retries})


def show(request, pk):
    return JsonResponse({"found": Note.objects.filter(pk=pk).exists()})


def count(request):
    return JsonResponse({"count": Note.objects.count()})
