"""Small pieces shared by several components."""
