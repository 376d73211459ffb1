"""lorat.data"""
