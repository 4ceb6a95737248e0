"""UV textures of the reference topology: the photo bake, filling unseen texels, de-lighting, skin colour, facial regions, normal/roughness maps, and re-baking colours of a converted mesh."""
