"""Data preparation: image sources, crops (MTCNN face detection among them) and the streamed writer.

Only the prepare stage uses this package; training reads the finished format through ``gans.data``
and never imports it (so editing, say, the face-detection batching does not retrain a model).

- ``sources``: where images come from (``data.source``), yielding raw images in a fixed order;
- ``crops``: how a square is taken from each image (``data.crop``);
- ``faces``: MTCNN detection and square face crops (facenet-pytorch);
- ``stream``: decode → crop → resize → judge duplicates, and the streamed writer of ``images.npy``.
"""
