"""Fitting the morphable head model to a portrait's landmarks, and measuring how well the fit overlays the photo."""
