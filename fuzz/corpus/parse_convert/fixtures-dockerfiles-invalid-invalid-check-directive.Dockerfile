# check=skip=JSONArgsRecommended;fail=true
FROM alpine
