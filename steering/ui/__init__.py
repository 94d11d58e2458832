"""The Gradio app's pieces: chat panes, demo panes, layout, links, mixing, calibration, the behavior meter."""
