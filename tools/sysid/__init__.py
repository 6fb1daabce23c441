"""System identification: refit the kinematic parameters and train the residual from logs."""
