"""Spiking networks: neurons, quantised ANNs, conversion, models and the stateful operator."""
