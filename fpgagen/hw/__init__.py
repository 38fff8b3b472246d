"""Hardware generation: shared Amaranth helpers, the top-level stitcher, Verilog emit."""
