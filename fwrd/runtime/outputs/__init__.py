"""What one scored slide leaves in OUT/<slide name>/, one module per output, each written atomically,
and the folder-level bookkeeping around them.

    heatmap.py       score grid (heatmap.npy, heatmap.png) and the cell <-> level-0 geometry
    tiles.py         tiles.csv, and the tiles.csv.part journal that --resume continues from
    overlay.py       overlay.png: the tumor call over the slide thumbnail, regions outlined
    colormap.py      the model's fixed colour scale (never per slide) and its colours
    legend.py        title band, colour key and scale bar around heatmap.png and overlay.png
    detections.py    detections.csv: NMS as NCRF, Camelyon16 format
    geojson.py       tumor.geojson: one QuPath annotation per region, traced along cell edges
    summary.py       summary.json, written last: with every other file, it marks complete outputs
    slide_folder.py  OUT/.<slide>.partial, where the outputs are made, swapped in whole as OUT/<slide>
    slides_table.py  OUT/slides.csv, rebuilt from the folder's complete slides and failures, under a lock
    locks.py         OUT/.<slide>.lock: one process scores a slide at a time; killed runs' locks removed
"""
