from django.urls import path

from notes import views

urlpatterns = [
    path("notes/", views.add),
    path("notes/<int:pk>/", views.show),
    path("count/", views.count),
]
