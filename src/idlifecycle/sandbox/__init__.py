"""Local emulators of the Graph and Google Directory APIs: test targets and the demo's default."""
