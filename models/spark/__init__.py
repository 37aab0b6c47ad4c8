"""Spark MLlib stages of the bundle build (``encore build --engine spark``).

Imported only when the Spark engine is chosen: nothing outside ``models.spark`` and the build's
engine switch imports ``pyspark``. ``build.py`` holds the entry point the build calls.
"""
