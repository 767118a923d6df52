"""The train stage: fine-tune (cluster) or train from scratch (local) the image classifier."""
