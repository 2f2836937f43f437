"""Reports: pure figure and table builders (the lab pages, the compare page and the HTML export draw
with the same ones), and the few modules that read the store for them (`loaders`, `bundle`, `seed`)."""
