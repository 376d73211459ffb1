"""lorat.train"""
