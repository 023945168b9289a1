"""Models in and out of other tools: NIR graphs read into spiking networks and written from them."""
