"""Model cards, rendered from the files a training run saves in the model directory, per model kind."""
