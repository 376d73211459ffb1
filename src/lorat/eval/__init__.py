"""lorat.eval"""
