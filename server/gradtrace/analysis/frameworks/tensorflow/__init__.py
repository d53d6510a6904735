"""TensorFlow and Keras as a plug-in of the gradient-flow interpreter: API tables, events, semantics and facts."""
