from django.db import models


class Order(models.Model):
    total = models.IntegerField(default=0)
    paid = models.BooleanField(default=False)
